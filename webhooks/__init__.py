"""Webhooks: outbound delivery, inbound provider webhooks, the Segment.com destination."""
