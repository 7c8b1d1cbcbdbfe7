"""Everything FPGA: the boards, their builds, component synthesis and the host link.

`board` (the `Board` type and the registry), one module per board (`icebreaker`,
`orangecrab`, `ulx3s`), `build` (the bitstream build), `nextpnr` (reading its
log), `synth` (one component's resources and Fmax), `synth_report` (the boards'
table) and `host` (the host side of the serial link).
"""
