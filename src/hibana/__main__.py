from hibana.cli import main

main()
