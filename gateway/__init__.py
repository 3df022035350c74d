"""Edge IoT gateway: collects local readings and dock scans, signs, publishes over MQTT."""
