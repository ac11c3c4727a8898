"""window_terminal."""
