"""``hibana.aws.handler(app)``: the same app on AWS Lambda (see hibana.adapters.app_on_lambda)."""

from hibana.adapters.app_on_lambda import TEXT_TYPES, LambdaHandler, UnknownEvent, handler
from hibana.adapters.lambda_on_hibana import LambdaContext

__all__ = ["TEXT_TYPES", "LambdaContext", "LambdaHandler", "UnknownEvent", "handler"]
