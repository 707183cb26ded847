from services.volunteers.app import SERVICE, create_app
from services.volunteers.settings import VolunteersSettings
from shared.serve import serve

if __name__ == "__main__":
    serve(SERVICE, VolunteersSettings, create_app)
