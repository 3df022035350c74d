"""Device-side code: sensor drivers and the signing SDK for loggers with their own key."""
