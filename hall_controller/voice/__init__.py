"""Voice announcements: clip pack, template, composer and the per-zone announcer (DESIGN §6)."""
