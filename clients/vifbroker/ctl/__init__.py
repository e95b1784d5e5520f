"""The operator's command line: ``vifbroker migrations …`` and ``vifbroker hosts …``.

Everything goes through :class:`vifbroker.client.BrokerClient`; this package
only parses options, calls the client and renders what it got (``render``).
"""
