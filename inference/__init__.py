"""Chat models behind one small interface: providers, routing, failover."""
