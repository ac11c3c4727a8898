"""Upstream link to the management system (DESIGN §7).

`records` builds the service record of a visit, `outbox` holds rows durably in the hall database,
`client` makes single HTTP calls and classifies them, `forwarder` owns every retry, and `reports`
computes and renders the monthly report.
"""
