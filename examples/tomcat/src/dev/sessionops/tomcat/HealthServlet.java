package dev.sessionops.tomcat;

import java.io.IOException;
import java.lang.management.ManagementFactory;

import javax.management.MBeanServer;
import javax.management.ObjectName;

import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;

/**
 * GET /healthz: 200 once this server holds the cluster's sessions. Tomcat opens its HTTP
 * port only after the DeltaManager has asked a peer for every session, but a transfer
 * that timed out still opens it, with no sessions: that server must not be ready (and,
 * used as the liveness path too, gets restarted to ask again).
 */
public class HealthServlet extends HttpServlet {
    private static final long serialVersionUID = 1L;

    @Override
    protected void doGet(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        String state;
        int status = HttpServletResponse.SC_OK;
        try {
            MBeanServer mbs = ManagementFactory.getPlatformMBeanServer();
            String ctx = req.getContextPath().isEmpty() ? "/" : req.getContextPath();
            ObjectName name = new ObjectName("Catalina:type=Manager,host=localhost,context=" + ctx);
            int asked = ((Number) mbs.getAttribute(name, "counterSend_EVT_GET_ALL_SESSIONS")).intValue();
            int failed = ((Number) mbs.getAttribute(name, "counterNoStateTransferred")).intValue();
            boolean transferred = (Boolean) mbs.getAttribute(name, "stateTransferred");
            int active = ((Number) mbs.getAttribute(name, "activeSessions")).intValue();
            if (asked == 0) {
                state = "first member: no peer to copy sessions from";
            } else if (transferred) {
                state = "sessions copied from a peer";
            } else {
                state = failed > 0 ? "session state transfer timed out" : "session state transfer running";
                status = HttpServletResponse.SC_SERVICE_UNAVAILABLE;
            }
            state += "; " + active + " sessions";
        } catch (Exception e) {
            state = "no cluster manager: " + e;
            status = HttpServletResponse.SC_SERVICE_UNAVAILABLE;
        }
        resp.setStatus(status);
        resp.setContentType("application/json");
        resp.getWriter().print("{\"ready\":" + (status == 200) + ",\"state\":\"" + state.replace('"', '\'')
                + "\",\"instance\":\"" + CounterServlet.instance() + "\"}\n");
    }
}
