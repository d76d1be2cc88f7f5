from lorakit.cli import main

main()
