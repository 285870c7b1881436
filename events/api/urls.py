"""Routes of the webhooks API, mounted under /api/v1/."""

from rest_framework.routers import SimpleRouter

from events.api.views import WebhookSubscriptionViewSet

router = SimpleRouter()
router.register("webhooks", WebhookSubscriptionViewSet, basename="webhook")

urlpatterns = router.urls
