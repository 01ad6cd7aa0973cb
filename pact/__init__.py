"""pact: PACT-quantized networks to bit-exact, simulated Verilog."""
