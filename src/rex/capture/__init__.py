"""``POST /capture``: unauthenticated lead capture from forms, chatbots and tools."""
