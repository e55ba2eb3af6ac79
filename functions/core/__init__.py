"""The pure domain: readings, ports (Protocols), domain errors, time and retry helpers. No AWS SDK here."""
