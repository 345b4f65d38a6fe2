"""FHIR R4 on the wire: JSON from the EHR in, ``fhir.resources.R4B`` models out.

- ``parsing``: the one place where EHR JSON becomes models (``parse_resource``, ``parse_bundle``);
  rejects what is not usable FHIR with ``FhirParseError`` (paths and error types, never values).
- ``repairs``: the few known Oracle Health (Cerner) artefacts that are repaired, not rejected.
- ``smart_discovery``: where a server's SMART endpoints are; ``smart_client``: the code exchange
  and the id_token check; ``rest``: reads, searches and JSON Patch with a launch's token.

Cerner speaks FHIR R4 (4.0.1); the top-level ``fhir.resources`` package is R5, so always ``R4B``.
"""
