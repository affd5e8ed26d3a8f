"""Adapters from the domain's ports to the outside world (Twilio, Stripe, Google, OpenAI, local defaults).

Import the module you need (``worker.integrations.twilio_sms`` …); nothing is
imported here so that, e.g., the webhook process never loads the OpenAI SDK.
"""
