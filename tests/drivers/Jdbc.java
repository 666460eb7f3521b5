// pgjdbc through the capture proxy: options=-c search_path=app in the URL,
// setFetchSize(100) in a transaction (Execute with a row limit, PortalSuspended),
// a PreparedStatement, and CopyManager.copyIn (COPY FROM STDIN).
import java.io.StringReader;
import java.sql.*;
import org.postgresql.PGConnection;
import org.postgresql.copy.CopyManager;

public class Jdbc {
    public static void main(String[] a) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + a[0] + "/" + a[1]
            + "?user=postgres&options=-c%20search_path%3Dapp&sslmode=disable";
        try (Connection c = DriverManager.getConnection(url)) {
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement("SELECT id, name FROM items WHERE id > ? ORDER BY id")) {
                ps.setFetchSize(100);
                ps.setInt(1, 0);
                int n = 0;
                try (ResultSet rs = ps.executeQuery()) { while (rs.next()) n++; }
                if (n != 3000) throw new RuntimeException("rows " + n);
            }
            c.commit();
            c.setAutoCommit(true);
            try (PreparedStatement ps = c.prepareStatement("SELECT name FROM items WHERE id = ?")) {
                for (int i = 1; i <= 3; i++) { ps.setInt(1, i); try (ResultSet rs = ps.executeQuery()) { rs.next(); } }
            }
            CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
            StringBuilder sb = new StringBuilder();
            for (int i = 2000; i < 2200; i++) sb.append(i).append("\tjdbc-").append(i).append("\n");
            long rows = cm.copyIn("COPY public.t_copy (a, b) FROM STDIN", new StringReader(sb.toString()));
            if (rows != 200) throw new RuntimeException("copy " + rows);
        }
    }
}
