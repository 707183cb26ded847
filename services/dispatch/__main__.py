from services.dispatch.app import SERVICE, create_app
from services.dispatch.settings import DispatchSettings
from shared.serve import serve

if __name__ == "__main__":
    serve(SERVICE, DispatchSettings, create_app)
