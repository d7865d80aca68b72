from rex.cli import main

main()
