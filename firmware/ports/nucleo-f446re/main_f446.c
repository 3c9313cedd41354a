/* NUCLEO-F446RE node: the model linked into flash, windows from the IIS3DWB, the framed
 * serial link on the ST-LINK virtual COM port, bridged to MQTT by `edgefleet bridge`. */
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "node_app.h"
#include "node_link.h"
#include "sensor.h"

extern const uint8_t _model_start[], _model_end[];

int main(void)
{
    node_config c;
    board_init();
    memset(&c, 0, sizeof c);
    if (sensor_init() != 0) {
        static const char msg[] = "sensor";
        node_link_send("boot", msg, sizeof msg - 1); /* the bridge logs a boot with a reason */
        for (;;)
            board_idle();
    }
    c.artifact = _model_start;
    c.artifact_len = (size_t)(_model_end - _model_start);
    c.fs = SENSOR_FS_HZ;
    c.source = sensor_read;
    c.paced = 1;
    return node_run(&c);
}
