"""Bringing models made elsewhere in: fetching a Hugging Face model folder (hub.py), the
suggested models (suggested.py); the conversion lives beside them (written by another
person later). May import core's top modules, data, models, runs."""
