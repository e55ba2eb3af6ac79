"""Test furniture the build never ships: fakes, event factories, the fault hook, the demo app, seed data."""
