"""Device identities for the MQTT path: IoT things, their X.509 certificates, the key material kept
locally.

``registry`` is the one adapter over the IoT control-plane API (AWS and the embedded emulator run the
same calls); ``provision`` creates, stores and revokes identities; ``commands`` is the ``iotpipe
devices`` command group.
"""
