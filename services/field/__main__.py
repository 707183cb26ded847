from services.field.app import SERVICE, create_app
from services.field.settings import FieldSettings
from shared.serve import serve

if __name__ == "__main__":
    serve(SERVICE, FieldSettings, create_app)
