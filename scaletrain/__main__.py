from scaletrain.cli import main

main()
