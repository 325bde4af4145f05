"""The service with BentoML's own request-timeout middleware, for benchmarks/soak.py.

The service installs its cancelling timeout (src/credit_risk/serving/timeout.py) when imported;
this puts BentoML's class back before BentoML builds the app, so that a soak can compare the two
in one run: `bentoml serve stock_timeout:CreditRiskService`, with this folder on PYTHONPATH.
"""

from bentoml._internal.server.http import traffic

from credit_risk.serving import service
from credit_risk.serving.timeout import CancellingTimeoutMiddleware

traffic.TimeoutMiddleware = CancellingTimeoutMiddleware.__mro__[1]
CreditRiskService = service.CreditRiskService
