"""Measuring models: compiled steps, their memory and FLOPs, device peaks, data."""
