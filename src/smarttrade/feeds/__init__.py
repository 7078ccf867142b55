"""Trade sources. Each yields TradeRecords (prices and quantities already integers in the
symbol's scales), streaming: a file is never loaded whole."""
