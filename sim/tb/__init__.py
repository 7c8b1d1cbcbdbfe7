"""cocotb testbenches run on the generated Verilog."""
