from services.notify.app import SERVICE, create_app
from services.notify.settings import NotifySettings
from shared.serve import serve

if __name__ == "__main__":
    serve(SERVICE, NotifySettings, create_app)
