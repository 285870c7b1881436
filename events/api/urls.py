"""Routes of the webhooks API, mounted under /api/v1/."""

from rest_framework.routers import SimpleRouter

from events.api.views import WebhookSubscriptionViewSet

# Path converters, not regexes: a viewset's `lookup_value_converter` shapes its ids.
router = SimpleRouter(use_regex_path=False)
router.register("webhooks", WebhookSubscriptionViewSet, basename="webhook")

urlpatterns = router.urls
