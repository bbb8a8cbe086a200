"""Drum kits: one sound per piece with a shared character, written for samplers.

``pieces`` names the pieces (class, prompt words, General-MIDI note), ``build`` generates a kit (related
noise, round robins, velocity layers), ``writers`` writes it as WAVs + SFZ + Decent Sampler + Hydrogen +
GM note map + kit.json.
"""
