"""Event contracts: what each service publishes, as versioned pydantic payloads.

A payload's ``type`` is its CloudEvents type (``doorstep.<entity>.<what>.v<N>``); on the
wire it travels in the ``ce_type`` header, not in the JSON data. Add optional fields only;
a breaking change is a new version.
"""
