"""Bringing models made elsewhere in: fetching a Hugging Face model folder (hub.py), the
suggested models (suggested.py), and turning a folder into a run (importer.py, with the two
architectures it maps onto our Transformer in architectures.py). May import core's top
modules, data, models, runs."""
