"""Microcontroller sources and the host-device serial protocol."""
