"""HouseParty: rooms and people as Python GenServers spread over an Erlang cluster."""

__all__: list[str] = []
