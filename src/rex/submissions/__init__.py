"""The submissions inbox: every post to a capture URL that passed the abuse limits."""
