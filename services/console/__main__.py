from services.console.app import SERVICE, create_app
from services.console.settings import ConsoleSettings
from shared.serve import serve

if __name__ == "__main__":
    serve(SERVICE, ConsoleSettings, create_app)
