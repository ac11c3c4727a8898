"""Sans-IO protocol codecs: bytes in, frames out, no I/O, tested with byte vectors."""
