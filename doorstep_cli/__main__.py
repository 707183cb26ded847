from doorstep_cli.main import app

app(prog_name="doorstep")
