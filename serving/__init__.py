"""The model served behind SageMaker's inference contract (bring-your-own-container).

``app.create_app`` is the HTTP server: ``GET /ping``, ``POST /invocations`` and the runtime API's
``POST /endpoints/{name}/invocations``, scoring with the processor's embedded backend
(``functions.detector.anomaly_detector.build_embedded``) so the endpoint and the Lambda compute the
same scores from the same artifact. ``python -m serving`` (or the ``serve`` executable beside this file,
what SageMaker runs in the container) starts it. Not part of any Lambda package.
"""
