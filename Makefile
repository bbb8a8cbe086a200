# sampleforge — two commands do all the set-up: `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_DATA := hydrogen-drumkits hydrogen-drumkits-effects hydrogen-data lmms-common sonic-pi-samples stk
DEBIAN_DRUMS := runs/debian-drums
APT_GM := fluidsynth fluid-soundfont-gm avldrums.lv2-soundfont
APT_TEST := redis-server chromium chromium-driver
APT_GET := $(shell [ "$$(id -u)" = 0 ] && echo apt-get || echo sudo apt-get)

.PHONY: install data data-gm test lint typecheck pytest demo train-default train-v2 train-v1 train-classifier train-vocoder bench clean apt-test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[test]"
	# audio-diffusion-pytorch checkpoints (backends/adp.py) and stable-audio-tools' own networks (the reference
	# the stable-audio-tools backend is tested against): without their deps, which would pull torchaudio
	$(BIN)/pip install -q "einops>=0.6"
	$(BIN)/pip install -q --no-deps "audio-diffusion-pytorch==0.1.3" "a-unet==0.0.16" "stable-audio-tools==0.0.19"
	touch $(STAMP)

install: $(STAMP)

## make data: the real drum recordings the default model is trained on: Debian's Hydrogen kits (in place) and
## the one-shots of lmms-common, sonic-pi-samples and stk, gathered as labelled kits into $(DEBIAN_DRUMS)
data: install
	@if dpkg -s $(APT_DATA) >/dev/null 2>&1; then echo "drum kits already installed"; else \
	  $(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq --no-install-recommends $(APT_DATA); fi
	$(BIN)/sampleforge data debian --out $(DEBIAN_DRUMS) >/dev/null

## more real drums, rendered note by note: the General-MIDI kits of FluidR3_GM (MIT) into runs/gm, and the two
## acoustic AVL Drumkits (CC-BY-SA-3.0) into runs/avl (not used by the shipped model; add
## `--data /usr/share/hydrogen/data/drumkits runs/gm runs/avl` to a training)
data-gm: install
	@if dpkg -s $(APT_GM) >/dev/null 2>&1; then echo "fluidsynth and the soundfonts already installed"; else \
	  $(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq --no-install-recommends $(APT_GM); fi
	$(BIN)/sampleforge data gm --out runs/gm
	$(BIN)/sampleforge data gm --out runs/avl --soundfont /usr/share/sounds/sf2/Black_Pearl_4_LV2.sf2 \
	  --soundfont /usr/share/sounds/sf2/Red_Zeppelin_4_LV2.sf2

## system packages the tests use (Redis for Celery, Chromium for the browser test, fluidsynth and soundfonts for data gm)
apt-test:
	@if dpkg -s $(APT_TEST) $(APT_GM) >/dev/null 2>&1; then echo "test system packages already installed"; else \
	  ($(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq $(APT_TEST) \
	   && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq --no-install-recommends $(APT_GM)) \
	  || echo "warning: could not install $(APT_TEST) $(APT_GM); the tests that need them will be skipped"; fi

lint: install
	$(BIN)/ruff check sampleforge tests benchmarks

typecheck: install
	$(BIN)/mypy sampleforge

pytest: install
	$(BIN)/python -m pytest -q -x --durations=15 tests

test: install apt-test data lint typecheck pytest

demo: install data
	$(BIN)/sampleforge doctor --brief || true
	$(BIN)/sampleforge data scan /usr/share/hydrogen/data/drumkits --brief
	$(BIN)/sampleforge demo --out-dir generations

## rebuild the shipped default model, drums-v2 (timbre knobs; time/4 VAE; Hydrogen kits + lmms, Sonic Pi and
## STK one-shots), from the Debian packages, in two runs: runs/drums-v2 (VAE, diffusion, VAE decoder), then
## runs/drums-v2-finetune (the U-Net fine-tuned on the second knob features). Resumable: run it again to
## continue; MINUTES=N stops each run cleanly after N minutes. The model card (weights/drums-v2/README.md) is kept.
MINUTES ?=
MAX_MINUTES = $(if $(MINUTES),--max-minutes $(MINUTES),)
V2_DATA = --data /usr/share/hydrogen/data/drumkits $(DEBIAN_DRUMS)
# after a training command: a run stopped by MINUTES or a signal (status 75) ends the recipe here without an error
STOPPED = { rc=$$?; [ $$rc = 75 ] && { echo "stopped before the end: run the same command again to continue"; exit 0; }; exit $$rc; }
train-default: install data
	set -e; \
	$(BIN)/sampleforge train all --config configs/drums-v2.json --out runs/drums-v2 --resume $(V2_DATA) $(MAX_MINUTES) \
	  || $(STOPPED); \
	$(BIN)/sampleforge train diffusion --config configs/drums-v2-finetune.json --out runs/drums-v2-finetune --resume \
	  $(V2_DATA) $(MAX_MINUTES) || $(STOPPED); \
	mkdir -p weights/drums-v2; \
	cp runs/drums-v2-finetune/model/config.json runs/drums-v2-finetune/model/vocab.json \
	  runs/drums-v2-finetune/model/timbre.json runs/drums-v2-finetune/model/*.safetensors weights/drums-v2/; \
	echo 'weights/drums-v2 rebuilt; the model card (README.md) describes the shipped run'

train-v2: train-default

## rebuild drums-v1, the previous default (Hydrogen kits only; its model card is kept)
train-v1: install data
	set -e; \
	$(BIN)/sampleforge train all --config configs/default.json --out runs/drums-v1 --resume \
	  --data /usr/share/hydrogen/data/drumkits $(MAX_MINUTES) || $(STOPPED); \
	mkdir -p weights/drums-v1; \
	cp runs/drums-v1/model/config.json runs/drums-v1/model/vocab.json runs/drums-v1/model/*.safetensors weights/drums-v1/; \
	echo 'weights/drums-v1 rebuilt; the model card (README.md) describes the shipped run'

## rebuild drums-vocoder-v1, the opt-in vocoder of drums-v1 and drums-v2 (`--vocoder-ckpt drums-vocoder-v1`: a
## network's magnitude for their Griffin-Lim; about an hour on 2 CPU threads; its model card is kept)
train-vocoder: install data
	set -e; \
	$(BIN)/sampleforge train vocoder --config configs/drums-vocoder-v1.json --out runs/drums-vocoder-v1 --resume \
	  $(V2_DATA) $(MAX_MINUTES) || $(STOPPED); \
	mkdir -p weights/drums-vocoder-v1; \
	cp runs/drums-vocoder-v1/model/config.json runs/drums-vocoder-v1/model/vocoder.safetensors weights/drums-vocoder-v1/; \
	echo 'weights/drums-vocoder-v1 rebuilt; the model card (README.md) describes the shipped run'

## rebuild the judge of `sampleforge eval` on the real clips drums-v2 trains on, holding out its kits
## (the card compares it with classifier-v1 on the same held-out clips while that is in the repository)
train-classifier: install data
	$(BIN)/sampleforge eval train-classifier --data /usr/share/hydrogen/data/drumkits $(DEBIAN_DRUMS) \
	  --config configs/drums-v2.json --out weights/classifier-v2 \
	  $(if $(wildcard weights/classifier-v1/model.safetensors),--compare weights/classifier-v1,)

## the default model's speed (benchmarks/speed.py: seconds a clip, real-time factor, peak RSS, the peer ratio measured
## in turn); `make install` puts the peer's packages in the venv
bench: install
	$(BIN)/python -m benchmarks.speed

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache generations
