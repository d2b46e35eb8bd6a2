"""STIX and TAXII value types: timestamps, markings, type tables, validation."""

from cutout.model import iri

# before anything here imports stix2validator, and with it jsonschema (cutout.model.iri says why)
iri.defer()
