// Included by chip_harness.sv when PACT_AXI is defined: the AXI tiled chip (pact gen --bus
// axi), an AXI4 slave over the harness memory, and an AXI4-Lite writer for the CSRs.
//
// Memory: AR is taken while fewer than RD_DEPTH bursts are outstanding (and not stalled);
// each burst's beats are due +MEM_LATENCY cycles after its AR, then one beat per cycle
// unless R is stalled; bursts are answered in AR order, each with its ARID as RID. AW is taken into a queue; W beats are taken only while an AW is queued
// (AXI lets a slave wait for AW); B follows each burst's last beat. A beat outside the memory
// answers DECERR (and counts in mem_errors). The LFSR stalls (+MEM_STALL) act on AR, R and
// W; B is never stalled (the chip's bready is constant 1).
//
// CSRs: a rising start writes PROG_ADDR, IN_ADDR, OUT_BASE and CTRL.START over AXI4-Lite (a
// few cycles); busy, done, cycles, error, layer and mac_beats are the chip's register
// sources, read hierarchically (the same values the STATUS... registers return).

    localparam int SZ = $clog2(MEM_WIDTH / 8);
    logic [31:0] araddr, awaddr;
    logic [2:0] arid, rid;   // the chip's ID_BITS
    logic [7:0] arlen, awlen;
    logic arvalid, arready, rvalid, rready, rlast, awvalid, awready, wvalid, wready, wlast;
    logic bvalid, bready;
    logic [1:0] rresp, bresp;
    logic [MEM_WIDTH-1:0] rdata, wdata;
    logic [MEM_WIDTH/8-1:0] wstrb;
    logic [5:0] l_awaddr, l_araddr;
    logic [31:0] l_wdata, l_rdata;
    logic l_awvalid, l_awready, l_wvalid, l_wready, l_bvalid, l_arready, l_rvalid;
    logic [1:0] l_bresp, l_rresp;
    logic irq;

    pact_tiled_chip chip (
        .clk(clk), .rst(rst_i),
        .m_axi_arid(arid), .m_axi_araddr(araddr), .m_axi_arlen(arlen), .m_axi_arsize(),
        .m_axi_arburst(), .m_axi_arlock(), .m_axi_arcache(), .m_axi_arprot(),
        .m_axi_arvalid(arvalid), .m_axi_arready(arready),
        .m_axi_rid(rid), .m_axi_rdata(rdata), .m_axi_rresp(rresp), .m_axi_rlast(rlast),
        .m_axi_rvalid(rvalid), .m_axi_rready(rready),
        .m_axi_awid(), .m_axi_awaddr(awaddr), .m_axi_awlen(awlen), .m_axi_awsize(),
        .m_axi_awburst(), .m_axi_awlock(), .m_axi_awcache(), .m_axi_awprot(),
        .m_axi_awvalid(awvalid), .m_axi_awready(awready),
        .m_axi_wdata(wdata), .m_axi_wstrb(wstrb), .m_axi_wlast(wlast), .m_axi_wvalid(wvalid),
        .m_axi_wready(wready),
        .m_axi_bid(3'b0), .m_axi_bresp(bresp), .m_axi_bvalid(bvalid), .m_axi_bready(bready),
        .s_axil_awaddr(l_awaddr), .s_axil_awprot(3'b0), .s_axil_awvalid(l_awvalid),
        .s_axil_awready(l_awready), .s_axil_wdata(l_wdata), .s_axil_wstrb(4'hF),
        .s_axil_wvalid(l_wvalid), .s_axil_wready(l_wready), .s_axil_bresp(l_bresp),
        .s_axil_bvalid(l_bvalid), .s_axil_bready(1'b1),
        .s_axil_araddr(6'b0), .s_axil_arprot(3'b0), .s_axil_arvalid(1'b0),
        .s_axil_arready(l_arready), .s_axil_rdata(l_rdata), .s_axil_rresp(l_rresp),
        .s_axil_rvalid(l_rvalid), .s_axil_rready(1'b1),
        .irq(irq)
    );
    assign busy = chip.core.busy;
    assign done = chip.core.done;
    assign cycles = chip.core.cycles;
    assign error = chip.regs.error[3:0];
    assign layer = chip.core.layer;
    assign mac_beats = chip.core.mac_beats;

    // -- AXI4-Lite writer: PROG_ADDR (0x08), IN_ADDR (0x0C), OUT_BASE (0x10), CTRL (0x00) ----
    logic [2:0] l_step = 3'd0;   // 0 idle, 1..4 the writes
    logic       l_wait_b = 1'b0;
    logic [31:0] l_vals [0:3];
    assign l_awvalid = (l_step != 0) && !l_wait_b;
    assign l_wvalid  = l_awvalid;
    assign l_awaddr  = l_step == 3'd1 ? 6'h08 : l_step == 3'd2 ? 6'h0C
                     : l_step == 3'd3 ? 6'h10 : 6'h00;
    assign l_wdata   = l_vals[l_step == 0 ? 0 : l_step - 1];
    always @(posedge clk) begin
        if (rst_i) begin
            l_step <= 0;
            l_wait_b <= 1'b0;
        end else if (l_step == 0) begin
            if (start_i) begin
                l_vals[0] <= prog_i;
                l_vals[1] <= in_i;
                l_vals[2] <= out_i;
                l_vals[3] <= 32'd1;
                l_step <= 3'd1;
            end
        end else if (!l_wait_b) begin
            if (l_awready) l_wait_b <= 1'b1;   // the slave takes AW and W together
        end else if (l_bvalid) begin
            l_wait_b <= 1'b0;
            l_step <= (l_step == 3'd4) ? 3'd0 : l_step + 3'd1;
        end
    end

    // -- AXI4 slave: reads ----------------------------------------------------------------------
    logic [31:0] ar_word [0:RD_DEPTH-1];
    logic [8:0]  ar_len  [0:RD_DEPTH-1];
    logic [2:0]  ar_id   [0:RD_DEPTH-1];
    logic [31:0] ar_due  [0:RD_DEPTH-1];
    int ar_head = 0, ar_count = 0;
    logic [8:0] r_beat = 0;
    wire [31:0] r_word = ar_word[ar_head] + 32'(r_beat);
    assign arready = (ar_count < RD_DEPTH) && !stall_cmd;
    assign rvalid  = (ar_count > 0) && (harness_cycle >= ar_due[ar_head]) && !stall_data;
    assign rdata   = (r_word < MEM_WORDS) ? mem[r_word[AW-1:0]] : '0;
    assign rresp   = (r_word < MEM_WORDS) ? 2'b00 : 2'b11;
    assign rlast   = (r_beat == ar_len[ar_head] - 1);
    assign rid     = ar_id[ar_head];
    wire ar_push = arvalid && arready;
    wire r_fire  = rvalid && rready;
    wire r_done  = r_fire && rlast;

    // -- AXI4 slave: writes ---------------------------------------------------------------------
    localparam int AW_DEPTH = 16;
    logic [31:0] aw_word [0:AW_DEPTH-1];
    int aw_head = 0, aw_count = 0, b_count = 0;
    logic [8:0] w_beat = 0;
    logic b_err = 1'b0, b_err_q [0:AW_DEPTH-1];
    int b_head = 0;
    wire [31:0] w_word = aw_word[aw_head] + 32'(w_beat);
    assign awready = (aw_count < AW_DEPTH) && (b_count < AW_DEPTH);
    assign wready  = (aw_count > 0) && !stall_wr;
    assign bvalid  = b_count > 0;
    assign bresp   = b_err_q[b_head] ? 2'b11 : 2'b00;
    wire aw_push = awvalid && awready;
    wire w_fire  = wvalid && wready;
    wire aw_pop  = w_fire && wlast;
    wire b_fire  = bvalid && bready;

    initial mem_errors = 0;
    always @(posedge clk) begin
        if (ar_push) begin
            ar_word[(ar_head + ar_count) % RD_DEPTH] <= araddr >> SZ;
            ar_len[(ar_head + ar_count) % RD_DEPTH]  <= {1'b0, arlen} + 9'd1;
            ar_id[(ar_head + ar_count) % RD_DEPTH]   <= arid;
            ar_due[(ar_head + ar_count) % RD_DEPTH]  <= harness_cycle + 32'(mem_latency);
        end
        if (r_fire) r_beat <= r_done ? 9'd0 : r_beat + 9'd1;
        if (r_done) ar_head <= (ar_head + 1) % RD_DEPTH;
        ar_count <= ar_count + int'(ar_push) - int'(r_done);

        if (aw_push) aw_word[(aw_head + aw_count) % AW_DEPTH] <= awaddr >> SZ;
        if (w_fire) begin
            w_beat <= aw_pop ? 9'd0 : w_beat + 9'd1;
            if (w_word < MEM_WORDS) begin
                for (int b = 0; b < MEM_WIDTH / 8; b++)
                    if (wstrb[b]) mem[w_word[AW-1:0]][8*b +: 8] <= wdata[8*b +: 8];
            end
            if (aw_pop) begin
                b_err_q[(b_head + b_count) % AW_DEPTH] <= b_err || (w_word >= MEM_WORDS);
                b_err <= 1'b0;
            end else if (w_word >= MEM_WORDS) begin
                b_err <= 1'b1;
            end
        end
        if (aw_pop) aw_head <= (aw_head + 1) % AW_DEPTH;
        aw_count <= aw_count + int'(aw_push) - int'(aw_pop);
        if (b_fire) b_head <= (b_head + 1) % AW_DEPTH;
        b_count <= b_count + int'(aw_pop) - int'(b_fire);
        if ((r_fire && r_word >= MEM_WORDS) || (w_fire && w_word >= MEM_WORDS)) begin
            if (mem_errors == 0) $display("chip_harness: AXI access of word %0d outside %0d words",
                                          r_fire && r_word >= MEM_WORDS ? r_word : w_word,
                                          MEM_WORDS);
            mem_errors <= mem_errors + 1;
        end
    end
