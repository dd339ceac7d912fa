"""One module per PLC protocol behind one small interface; see drivers/README.md."""
