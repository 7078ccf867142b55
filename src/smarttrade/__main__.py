from smarttrade.cli import main

main()
