"""``hibana.aws.handler(app)``: the same app on AWS Lambda (see hibana.adapters.aws)."""

from hibana.adapters.aws import TEXT_TYPES, LambdaContext, LambdaHandler, UnknownEvent, handler

__all__ = ["TEXT_TYPES", "LambdaContext", "LambdaHandler", "UnknownEvent", "handler"]
