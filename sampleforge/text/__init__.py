"""Prompt keywords: normalisation and the model's vocabulary."""

from sampleforge.text.keywords import Vocabulary, category_of, tokenize

__all__ = ["Vocabulary", "category_of", "tokenize"]
