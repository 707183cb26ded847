from services.identity.app import SERVICE, create_app
from services.identity.settings import IdentitySettings
from shared.serve import serve

if __name__ == "__main__":
    serve(SERVICE, IdentitySettings, create_app)
