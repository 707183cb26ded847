from services.orders.app import SERVICE, create_app
from services.orders.settings import OrdersSettings
from shared.serve import serve

if __name__ == "__main__":
    serve(SERVICE, OrdersSettings, create_app)
