// The chip's test harness: pact_chip, an external memory, and its own clock.
//
// The memory (MEM_WORDS words of MEM_WIDTH bits) is loaded with $readmemh from the file named
// by +MEMFILE=<path>: at time 0 and again on every rising edge of `load` (the bench rewrites
// the file between batches). A rising edge of `dump` writes words 0..dump_last with $writememh
// to +DUMPFILE=<path>. The clock runs inside the HDL (`always #5`, 100 MHz at 1ns/1ps), so a
// cocotb bench only drives reset and the CSRs and awaits `done`: no Python runs per cycle.
//
// Memory port (the stream contract of CHIP.md): read commands are accepted while fewer than
// RD_DEPTH reads are in flight; read data returns in order, +MEM_LATENCY=<n> cycles (default 1)
// after the command at the earliest. +MEM_STALL=<percent> makes the memory drop mem_rd_cmd.ready, mem_rd_data.valid and
// mem_wr.ready at random (a fixed LFSR, so runs repeat) to exercise back-pressure. An access
// outside the memory counts in `mem_errors` (and is reported once), reads return 0.
//
// Waveforms: with +WAVES=<file> (Icarus: any build, run with -fst; Verilator: a --trace
// build) the dump opens when `wave_on` first rises and pauses while it is low (Icarus; Verilator
// keeps recording to the end of the run), so a bench can capture a window.
//
// +AUTOSTART (no cocotb; for a plain `verilator --binary --timing` build): the harness resets
// the chip and runs +IMAGES=<n> inferences itself, image i with in_addr = +IN_ADDR + i *
// +IN_STRIDE and out_base = +OUT_BASE + i * +OUT_STRIDE (program at +PROG_ADDR), then prints
// "AUTOSTART images=<n> cycles=<sum of the chip's cycle counts> error=<flags>", dumps the
// memory if +DUMPFILE is given, and calls $finish.
//
// The chip is pact_chip (the plane chip), or pact_tiled_chip when PACT_TILED is defined; the
// tiled chip's writes carry byte strobes (mem_wr payload: addr, data, strobe, LSB first).
// With PACT_AXI too, the chip is the AXI tiled chip (pact gen --bus axi) and
// chip_harness_axi.svh replaces the memory model: an AXI4 slave with the same latency, depth
// and stall rules (per burst), and an AXI4-Lite writer for the CSRs (the status ports are
// read from the chip's register sources).
`timescale 1ns / 1ps

`ifdef PACT_TILED
`define PACT_CHIP_MODULE pact_tiled_chip
`define PACT_STROBES 1
`else
`define PACT_CHIP_MODULE pact_chip
`define PACT_STROBES 0
`endif

module chip_harness #(
    parameter int MEM_WIDTH = 64,
    parameter int MEM_WORDS = 65536,
    parameter int RD_DEPTH = 16
) (
    output logic        clk,
    input  logic        rst,
    input  logic        start,
    input  logic [31:0] prog_addr,
    input  logic [31:0] in_addr,
    input  logic [31:0] out_base,
    input  logic        load,
    input  logic        dump,
    input  logic [31:0] dump_last,
    input  logic        wave_on,
    output logic        busy,
    output logic        done,
    output logic [31:0] cycles,
    output logic [3:0]  error,
    output logic [7:0]  layer,
    output logic [31:0] mac_beats,
    output logic [31:0] mem_errors,
    output logic [31:0] harness_cycle
);
    localparam int AW = $clog2(MEM_WORDS);

    initial clk = 1'b0;
    always #5 clk = ~clk;

    // -- CSR drivers: the ports, or the AUTOSTART sequencer ---------------------------------
    logic autostart = 1'b0;
    logic a_rst = 1'b1, a_start = 1'b0;
    logic [31:0] a_prog = 0, a_in = 0, a_out = 0;
    // Registered, so that none of the chip's logic is combinational in what the bench (or
    // the AUTOSTART sequencer) writes: Verilator re-evaluates such logic whenever a driver
    // may have changed, not only at the clock (the chip sees them one cycle later).
    logic       rst_i = 1'b1, start_i = 1'b0;
    logic [31:0] prog_i = 0, in_i = 0, out_i = 0;
    always @(posedge clk) begin
        rst_i   <= autostart ? a_rst   : rst;
        start_i <= autostart ? a_start : start;
        prog_i  <= autostart ? a_prog  : prog_addr;
        in_i    <= autostart ? a_in    : in_addr;
        out_i   <= autostart ? a_out   : out_base;
    end

    // -- the chip ------------------------------------------------------------------------------
    logic                 rd_cmd_valid, rd_cmd_ready;
    logic [31:0]          rd_cmd_addr;
    logic                 rd_data_valid, rd_data_ready;
    logic [MEM_WIDTH-1:0] rd_data;
    logic                 wr_valid, wr_ready;
    localparam int STRB = MEM_WIDTH / 8;
    localparam int WR_BITS = 32 + MEM_WIDTH + (`PACT_STROBES ? STRB : 0);
    logic [WR_BITS-1:0] wr_payload;

`ifndef PACT_AXI
    `PACT_CHIP_MODULE chip (
        .clk(clk), .rst(rst_i),
        .start(start_i), .prog_addr(prog_i), .in_addr(in_i), .out_base(out_i),
        .busy(busy), .done(done), .cycles(cycles), .error(error), .layer(layer),
        .mac_beats(mac_beats),
        .mem_rd_cmd__payload(rd_cmd_addr), .mem_rd_cmd__valid(rd_cmd_valid),
        .mem_rd_cmd__ready(rd_cmd_ready),
        .mem_rd_data__payload(rd_data), .mem_rd_data__valid(rd_data_valid),
        .mem_rd_data__ready(rd_data_ready),
        .mem_wr__payload(wr_payload), .mem_wr__valid(wr_valid), .mem_wr__ready(wr_ready)
    );
`else
`include "chip_harness_axi.svh"
`endif

    // -- the memory ----------------------------------------------------------------------------
    logic [MEM_WIDTH-1:0] mem [0:MEM_WORDS-1];
    string memfile, dumpfile, wavefile;
    int stall_pct = 0;
    int mem_latency = 1;
    int mem_last = MEM_WORDS - 1;

    // +MEM_LAST=<n>: the file holds words 0..n (so simulators do not warn about a short file).
    task automatic load_memory();
        if (memfile != "") $readmemh(memfile, mem, 0, mem_last);
    endtask

    initial begin
        if (!$value$plusargs("MEM_LAST=%d", mem_last)) mem_last = MEM_WORDS - 1;
        if (!$value$plusargs("MEMFILE=%s", memfile)) memfile = "";
        load_memory();
        if (!$value$plusargs("DUMPFILE=%s", dumpfile)) dumpfile = "";
        if (!$value$plusargs("MEM_STALL=%d", stall_pct)) stall_pct = 0;
        if (!$value$plusargs("MEM_LATENCY=%d", mem_latency) || mem_latency < 1) mem_latency = 1;
        if (!$value$plusargs("WAVES=%s", wavefile)) wavefile = "";
    end
    always @(posedge load) load_memory();
    always @(posedge dump) if (dumpfile != "") $writememh(dumpfile, mem, 0, dump_last);
    // The dump opens at the first rising edge of wave_on (Verilator ignores $dumpoff, so a
    // dump opened at time 0 would hold the whole run), pauses while wave_on is low.
    logic wave_open = 1'b0;
    always @(posedge wave_on) begin
        if (wavefile != "" && !wave_open) begin
            $dumpfile(wavefile);
            $dumpvars(0, chip_harness);
            wave_open <= 1'b1;
        end else if (wave_open) begin
            $dumpon;
        end
    end
    always @(negedge wave_on) if (wave_open) $dumpoff;

    // Back-pressure: a 32-bit Galois LFSR; each channel stalls when its byte is below the
    // threshold (stall_pct percent of 256).
    logic [31:0] lfsr = 32'h1;
    always @(posedge clk) lfsr <= {1'b0, lfsr[31:1]} ^ (lfsr[0] ? 32'hA3000000 : 32'h0);
    wire [8:0] thresh = 9'(stall_pct * 256 / 100);
    wire stall_cmd  = {1'b0, lfsr[7:0]}   < thresh;
    wire stall_data = {1'b0, lfsr[15:8]}  < thresh;
    wire stall_wr   = {1'b0, lfsr[23:16]} < thresh;

`ifndef PACT_AXI
    // Read responses wait in a FIFO, each until its due cycle (the command's cycle plus the
    // latency); at most RD_DEPTH in flight.
    logic [MEM_WIDTH-1:0] rd_fifo [0:RD_DEPTH-1];
    logic [31:0]          rd_due  [0:RD_DEPTH-1];
    int rd_head = 0, rd_count = 0;
    assign rd_cmd_ready  = (rd_count < RD_DEPTH) && !stall_cmd;
    assign rd_data_valid = (rd_count > 0) && (harness_cycle >= rd_due[rd_head]) && !stall_data;
    assign rd_data       = rd_fifo[rd_head];
    assign wr_ready      = !stall_wr;

    wire [31:0]          wr_addr = wr_payload[31:0];
    wire [MEM_WIDTH-1:0] wr_data = wr_payload[MEM_WIDTH+31:32];
    wire [STRB-1:0]      wr_strobe;
    generate
        if (`PACT_STROBES) begin : g_strobe
            assign wr_strobe = wr_payload[WR_BITS-1:MEM_WIDTH+32];
        end else begin : g_full
            assign wr_strobe = '1;
        end
    endgenerate
    wire rd_push = rd_cmd_valid && rd_cmd_ready;
    wire rd_pop  = rd_data_valid && rd_data_ready;

    initial mem_errors = 0;
    always @(posedge clk) begin
        if (rd_push) begin
            rd_due[(rd_head + rd_count) % RD_DEPTH] <= harness_cycle + 32'(mem_latency);
            if (rd_cmd_addr < MEM_WORDS) begin
                rd_fifo[(rd_head + rd_count) % RD_DEPTH] <= mem[rd_cmd_addr[AW-1:0]];
            end else begin
                rd_fifo[(rd_head + rd_count) % RD_DEPTH] <= '0;
                if (mem_errors == 0) $display("chip_harness: read of word %0d outside %0d words",
                                              rd_cmd_addr, MEM_WORDS);
                mem_errors <= mem_errors + 1;
            end
        end
        if (rd_pop) rd_head <= (rd_head + 1) % RD_DEPTH;
        rd_count <= rd_count + int'(rd_push) - int'(rd_pop);
        if (wr_valid && wr_ready) begin
            if (wr_addr < MEM_WORDS) begin
                for (int b = 0; b < STRB; b++)
                    if (wr_strobe[b]) mem[wr_addr[AW-1:0]][8*b +: 8] <= wr_data[8*b +: 8];
            end else begin
                if (mem_errors == 0) $display("chip_harness: write of word %0d outside %0d words",
                                              wr_addr, MEM_WORDS);
                mem_errors <= mem_errors + 1;
            end
        end
    end

`endif

    initial harness_cycle = 0;
    always @(posedge clk) harness_cycle <= harness_cycle + 1;

    // -- AUTOSTART: the plain-binary benchmark -------------------------------------------------
    initial begin
        int n, in0, in_stride, out0, out_stride, prog, found;
        longint total;
        if ($test$plusargs("AUTOSTART")) begin
            autostart = 1'b1;
            n = 1; prog = 0; in0 = 0; in_stride = 0; out0 = 0; out_stride = 0;
            found = $value$plusargs("IMAGES=%d", n);
            found = $value$plusargs("PROG_ADDR=%d", prog);
            found = $value$plusargs("IN_ADDR=%d", in0);
            found = $value$plusargs("IN_STRIDE=%d", in_stride);
            found = $value$plusargs("OUT_BASE=%d", out0);
            found = $value$plusargs("OUT_STRIDE=%d", out_stride);
            total = 0;
            a_prog = prog;
            repeat (4) @(negedge clk);
            a_rst = 1'b0;
            @(negedge clk);
            for (int i = 0; i < n && error == 0; i++) begin
                a_in = in0 + i * in_stride;
                a_out = out0 + i * out_stride;
                a_start = 1'b1;
                @(negedge clk);
                a_start = 1'b0;
                while (done && !busy) @(negedge clk);  // until the chip took the start
                while (!done) @(negedge clk);
                total += 64'(cycles);
            end
            $display("AUTOSTART images=%0d cycles=%0d error=%0d", n, total, error);
            if (dumpfile != "") $writememh(dumpfile, mem);
            $finish;
        end
    end
endmodule
