"""guardstream gateway: the aiohttp proxy, its policy, cache and audit producer."""
