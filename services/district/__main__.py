from services.district.app import SERVICE, create_app
from services.district.settings import DistrictSettings
from shared.serve import serve

if __name__ == "__main__":
    serve(SERVICE, DistrictSettings, create_app)
