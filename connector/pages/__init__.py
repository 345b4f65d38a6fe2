"""HTML pages of the clinical flows, rendered server-side: the provider's visit page (and its
appointment picker), the patient's join page, and the plain pages that explain a refusal.

Pure string rendering with every value escaped; no azure.functions here (the triggers wrap the
HTML in responses). Pages carry their small CSS and JS inline under a per-response CSP nonce,
so they need no CDN and nothing else may run in them.
"""
