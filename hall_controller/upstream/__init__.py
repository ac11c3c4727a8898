"""Upstream link to the management system (DESIGN §7).

The daemon's side of the link, over the service: `client` makes single HTTP calls and classifies
them, `forwarder` owns every retry over the outbox, `reports` computes and renders the monthly report,
and `service` wires them into the daemon. What they send is the store's: the service record of a
visit (`hall_controller.store.records`) and the outbox rows (`hall_controller.store.outbox`), written
in the transaction that closes the visit. hallctl's commands for it are `hall_controller.cli_upstream`.
"""
